"""Model Context Protocol servers: their tools beside ours, through the official `mcp` SDK."""
