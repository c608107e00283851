from fasd.cli import main

main()
