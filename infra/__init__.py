"""DeepRest testbeds: the local one of real processes, and minikube + OpenEBS."""
