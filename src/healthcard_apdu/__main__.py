"""``python -m healthcard_apdu`` runs the ``healthcard`` command line."""

from healthcard_apdu.cli import main

if __name__ == "__main__":
    main()
