"""Subcommands of ``nvmet-p2p``; one module each, discovered by ``nvmet_p2p.cli``."""
