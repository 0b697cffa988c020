"""One module per `deeprest` command: `configure(parser)` and `run(args) -> exit status`."""
