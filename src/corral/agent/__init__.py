"""corral on every host: `corral agent` joins the pool, runs what it is assigned, ships logs.

See README.md in this folder. The server side is `corral.backends.agent` (the backend) and
`corral.api.agents` (the wire); `corral.agent.protocol` is the contract between them.
"""
