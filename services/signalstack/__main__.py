from signalstack.cli import main

main()
