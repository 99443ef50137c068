"""A Flower App using gradsparse: see ../README.md."""
