"""Edge analysis: radial integration, spot finding, indexing, image scoring (issue #7)."""
