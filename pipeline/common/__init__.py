"""Plumbing every layer uses: errors, atomic writes, input readers, threads, CLI support, CPU kernel pins."""
