"""The competition's columns, user features, encodings and the processed matrices' file format."""
