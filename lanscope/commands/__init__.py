"""One module per CLI subcommand (see lanscope.cli.COMMANDS)."""
