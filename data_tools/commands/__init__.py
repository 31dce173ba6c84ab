"""`hccr-data` subcommands: one thin module each (`add_arguments(parser)`, `run(args)`); the
work is done by the library modules in `data_tools/`."""
