"""The minikube + OpenEBS testbed: DeathStarBench social network, Prometheus, DeepRest."""
