"""CLI subcommands, one module each (see ``synctalk_lib.cli``). Modules import heavy packages inside ``run``."""
