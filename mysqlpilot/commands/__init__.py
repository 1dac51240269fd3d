"""Click command modules. Each exposes `register(group)`; mysqlpilot.cli wires them into `mysqlpilot`."""
