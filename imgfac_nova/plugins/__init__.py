"""OS and cloud plugins: their base classes and how they are found and chosen."""
