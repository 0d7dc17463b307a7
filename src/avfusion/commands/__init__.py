"""Sub-commands of the `avfusion` CLI: one module per command (group), each with

    def register(subparsers) -> None   # adds its parser(s) and sets `func=handler` (handler(args) -> int)

`avfusion.cli` discovers every module in this package; adding a command is adding a file.
"""
