#!/usr/bin/env bash
# Builds the training and held-out text corpora from pinned Debian packages.
#   training text: dict-gcide, dict-jargon, bible-kjv-text (dumped with bible-kjv's `bible` tool)
#   held-out text (evaluation haystacks only): dict-foldoc
# Nothing is installed: packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`.
# Usage: scripts/make_corpus.sh [OUT_DIR]   (default data/build; writes train.txt, heldout.txt, SHA256SUMS)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/data/build}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# package=version sha256-of-the-.deb (Debian 12 "bookworm")
pins=(
  "dict-gcide=0.48.5+nmu2 7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f"
  "dict-jargon=4.4.7-3.1 405f8168d7994ed2cb71407bb95493daec2e9aa66fc0461dafa74a9d6728a8c1"
  "bible-kjv-text=4.38 d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a"
  "bible-kjv=4.38 75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d"
  "dict-foldoc=20230119-1 745cbedb55c2da609cc88ee0284e9d11a67a11ae3709daf7bad0e895ac3294c3"
)
cd "$work"
for p in "${pins[@]}"; do
  pv="${p% *}"; sum="${p#* }"
  name="${pv%%=*}"
  apt-get download -q "$pv" >/dev/null 2>&1 || { apt-get update -qq && apt-get download -q "$pv"; }
  deb="$(ls "$name"_*.deb)"
  echo "$sum  $deb" | sha256sum -c --quiet - || { echo "make_corpus: checksum mismatch for $deb" >&2; exit 1; }
  dpkg-deb -x "$deb" x
done
# bible-kjv is an amd64 binary; -f turns pretty-printing off (one verse per line).
x/usr/bin/bible -d x/usr/lib/bible.data -f gen1:1-rev22:21 > x/bible.txt
/usr/bin/python3 "$root/data/clean.py" x "$dest"
(cd "$dest" && sha256sum train.txt heldout.txt > SHA256SUMS && cat SHA256SUMS)
