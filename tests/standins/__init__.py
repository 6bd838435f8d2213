"""Local stand-ins of vendor HTTP APIs (loopback servers speaking each documented contract) for tests and the
local demo run; importable without pytest."""
