"""DeepRest load generator: Locust users, load shapes as data, attack injectors."""
