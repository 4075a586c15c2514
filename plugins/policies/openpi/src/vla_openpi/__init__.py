"""vla-openpi: pi0 / pi0-FAST through openpi's own policy server. Light to import."""
