"""The latency dashboard of the admin: database aggregates, server-drawn SVG charts, the page."""
