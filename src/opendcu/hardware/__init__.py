"""Hardware driver: the UDP data-packet format, configuration packets, and the DCU side of the module link."""
