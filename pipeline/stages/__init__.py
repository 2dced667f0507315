"""One module per DVC stage in dvc.yaml: read the inputs, call the libraries, write the outputs."""
