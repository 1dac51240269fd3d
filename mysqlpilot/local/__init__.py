"""`mysqlpilot local`: a whole cluster on one machine (Consul dev agent + a supervisor per node)."""
