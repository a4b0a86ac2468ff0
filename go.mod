module github.com/rlif/rlif

go 1.24.1

require github.com/ollama/ollama v0.9.6
