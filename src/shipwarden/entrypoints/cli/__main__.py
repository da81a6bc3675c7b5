from shipwarden.entrypoints.cli import main

main()
