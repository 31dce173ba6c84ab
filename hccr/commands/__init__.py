"""CLI subcommands of `hccr`; each module has `add_arguments(parser)` and `run(args) -> int`."""
