"""How the server is reached: stdio here; HTTP (Streamable HTTP and SSE) alongside."""
