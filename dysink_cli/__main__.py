"""`python -m dysink_cli` (and `torchrun -m dysink_cli batch ...`) run the dysink CLI."""

from dysink_cli.cli.app import main

if __name__ == "__main__":
    main()
