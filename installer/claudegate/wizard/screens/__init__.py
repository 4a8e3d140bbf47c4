"""The wizard's screens, one module per concern (form steps, clients, review, deploy, console)."""
