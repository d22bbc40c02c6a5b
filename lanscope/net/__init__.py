"""Network helpers shared by stages and commands: targets, scope, interfaces, port specs."""
