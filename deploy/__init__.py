"""gridpilot: the site agent of a hybrid Bitcoin-mining and AI-GPU facility.

Installed, this folder is the package root `gridpilot`: beside the code's three packages
(`gridpilot.agent`, `gridpilot.optimizer`, `gridpilot.adapters`, from the folders of the same
names) it carries what a site runs with, as package data: the example site in `examples/` and
the bundled recorded data in `data/` (provenance in `data/SOURCES.md`). `gridpilot.agent.bundled`
finds them, in a checkout and in an installed wheel alike.
"""
