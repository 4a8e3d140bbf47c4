from claudegate_gateway.cli import main

# Guarded: the inspection worker is spawned, and spawn imports the parent's
# __main__ module (as __mp_main__) in the child.
if __name__ == "__main__":
    raise SystemExit(main())
