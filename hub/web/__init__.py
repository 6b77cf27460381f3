"""The fleet web page of the hub (``edge-hub web``): operators log in and see the fleet table by
urgency, the hub's alerts, a plot of backlog and online gateways over time, and recent remote
commands, live; one process per province whatever the number of ingest workers."""
