"""params.yaml as typed, checked sections, and the `Setting` type model families declare theirs with."""
