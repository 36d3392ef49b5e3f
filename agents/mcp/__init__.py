"""MCP: the servers admins plug in, and the long-lived sessions the agent loop calls tools over.

Pure async code on the mcp 2.x SDK: no Django here (agents.tool_catalog is the Django side that
turns rows into `McpServerConfig`s and stores what the servers list).
"""
