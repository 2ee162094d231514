"""Human handoff: agents, teams, routing, and the desk agents act through."""
