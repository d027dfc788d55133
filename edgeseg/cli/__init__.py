"""The ``edgeseg`` command line: thin commands (parse → call one library function → render)."""
