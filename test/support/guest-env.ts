// Imported before testcontainers: the guest tests remove their own containers
// and networks (also on failure), so testcontainers' reaper container, which
// would have to come from a registry, is not used.
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
