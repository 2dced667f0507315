#!/usr/bin/env bash
# Rebuilds .dvc/plots/offline.html: DVC's page for `dvc plots show` with vega, vega-lite and
# vega-embed inlined (the versions dvc-render loads from a CDN), so the plots render with no
# network. Needs npm (the npm registry). Run from the repository root.
set -euo pipefail
work=$(mktemp -d)
(cd "$work" && npm pack --silent vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 >/dev/null \
    && for f in *.tgz; do tar xzf "$f" --one-top-level; done)
out=.dvc/plots/offline.html
{
    printf '<!DOCTYPE html>\n<html>\n<head>\n    {refresh_tag}\n    <meta charset="utf-8">\n'
    printf '    <title>House Prices: DVC plots</title>\n'
    for lib in vega-5.20.2/package/build/vega.min.js vega-lite-5.2.0/package/build/vega-lite.min.js \
               vega-embed-6.18.2/package/build/vega-embed.min.js; do
        printf '    <script type="text/javascript">\n'
        cat "$work/$lib"
        printf '\n    </script>\n'
    done
    printf '    <style>\n        body { font-family: sans-serif; }\n        table { border-spacing: 15px; }\n    </style>\n'
    printf '</head>\n<body>\n    {plot_divs}\n</body>\n</html>\n'
} > "$out"
cp "$work/vega-5.20.2/package/LICENSE" .dvc/plots/offline/LICENSE-vega
cp "$work/vega-lite-5.2.0/package/LICENSE" .dvc/plots/offline/LICENSE-vega-lite
cp "$work/vega-embed-6.18.2/package/LICENSE" .dvc/plots/offline/LICENSE-vega-embed
rm -rf "$work"
echo "wrote $out ($(wc -c < "$out") bytes)"
