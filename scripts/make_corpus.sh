#!/usr/bin/env bash
# Builds the training and held-out text corpora from pinned Debian packages.
#   training text: dict-gcide, dict-jargon, bible-kjv-text (dumped with bible-kjv's `bible` tool)
#   varied training text (train-varied.txt = train.txt + these): linux-doc-6.1, python3.11-doc,
#     manpages, manpages-dev, gnu-standards, fortunes
#   held-out text (evaluation haystacks only): dict-foldoc (heldout.txt, and the shipped default
#     haystack python/proxyattn/eval/data/haystack.txt.gz), debian-handbook + debian-reference-en
#     (heldout2.txt)
# Nothing is installed: packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`.
# Usage: scripts/make_corpus.sh [OUT_DIR]   (default data/build; writes train.txt, heldout.txt,
#   train-varied.txt(.gz), heldout2.txt, haystack.txt(.gz), SHA256SUMS; and copies haystack.txt.gz
#   to python/proxyattn/eval/data/). data/README.md lists the packages, licenses and hashes.
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
  "linux-doc-6.1=6.1.176-1 0d843674607703b9ef8c1db5e715c38ed52ff23574feabfe0d961d552126859f"
  "python3.11-doc=3.11.2-6+deb12u8 50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b"
  "manpages=6.03-2 efa1ba4cd19ad7baeae959c9209a7eb74be2ebb858bcabb412597bfc9f588c91"
  "manpages-dev=6.03-2 96f55cb5e26231d5567c89b692bced63825a14a2d5bd18fdf16ea2ed44eb9838"
  "gnu-standards=2022.03.23-0.1 2087dda531c69d8505856a45e0334746f3f25211a237c95d375eed13a7d8c201"
  "fortunes=1:1.99.1-7.3 41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"
  "debian-handbook=11.20220922 3d5dbeac1f1afc9c094eab9d0f701f6ecff99c4927d5a4794cf6c85678134faa"
  "debian-reference-en=2.100 9f31d3a17df505de09689ca255512ea58c1fc47c59bb1b0c7bf1c23362e9743f"
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
cd "$dest"
gzip -n -9 -c train-varied.txt > train-varied.txt.gz
gzip -n -9 -c haystack.txt > haystack.txt.gz
mkdir -p "$root/python/proxyattn/eval/data"
cp haystack.txt.gz "$root/python/proxyattn/eval/data/haystack.txt.gz"
sha256sum train.txt heldout.txt train-varied.txt train-varied.txt.gz heldout2.txt haystack.txt \
  haystack.txt.gz > SHA256SUMS
cat SHA256SUMS
