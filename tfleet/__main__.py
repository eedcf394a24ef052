from tfleet.cli.main import main

main()
