# Convenience targets; ./scripts/test is the one test command.
.PHONY: test dev build vet

test:
	./scripts/test

dev:
	go run ./cmd/mcpgw dev

build:
	go build -o bin/mcpgw ./cmd/mcpgw

vet:
	go vet ./...
