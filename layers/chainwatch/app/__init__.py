"""The application floor: the command line, the embedded local run, the Lambda runtimes and their settings."""
