"""Python sandbox for the code interpreter: runner (trusted), zygote, one child per block."""
