"""What steers a run from below the session: cancellation, questions, progress.

- :mod:`.cancel` -- :class:`CancelToken` and the one cancellable ``sleep``;
- :mod:`.interaction` -- the questions a run asks (host key, consent, secret)
  and the :class:`Interaction` protocol a front end answers them through;
- :mod:`.controls` -- how a session's token and interaction reach the steps
  and the probes (a context variable, set for one run);
- :mod:`.progress` -- :class:`StepEvent`, the one progress event type.

The deploy, the probes and the connectors use these, and the session hands
them in; so they sit below all of them (the ``layers`` contract in
pyproject.toml).

Import the modules directly; this package re-exports nothing.
"""
