#!/usr/bin/env bash
# scripts/check-includes.sh: fails when an #include crosses a forbidden arrow of the layout
# (docs/design.md). The library's targets point api -> {cpu, cuda} -> common and nothing back;
# the oracle sits beside the library; public headers expose no internals; the programs around
# the library (tools/, python/csrc, bench/, examples/, fuzz/, src/runner) use only the public
# <proxyattn/...> headers, system headers and headers of their own directory (fuzzers of the
# command line also the CLI's headers), never a source file.
#   scripts/check-includes.sh          # from anywhere in the repository; exit 1 on any offence
set -euo pipefail
cd "$(dirname "$0")/.."

# Headers the build generates next to its own targets (src/runner/CMakeLists.txt: the demo's
# prompts); a program may include them by name.
generated='^proxyattn_demo_data\.h$'
# First path components that name the library's internals (src/ is on the include path).
internal='^(common|cpu|cuda|api|oracle|runner|src|testing|tests)/'
status=0

offence() {  # file line include why
  printf '%s:%s: #include %s: %s\n' "$1" "$2" "$3" "$4"
  status=1
}

# Prints "line<TAB>kind<TAB>path" for every #include of a file; kind is " (quotes) or < (angle).
includes_of() {
  awk '{
    if (match($0, /^[ \t]*#[ \t]*include[ \t]*[<"][^">]+[">]/)) {
      s = substr($0, RSTART, RLENGTH)
      sub(/^[ \t]*#[ \t]*include[ \t]*/, "", s)
      kind = substr(s, 1, 1)
      path = substr(s, 2, length(s) - 2)
      printf "%d\t%s\t%s\n", NR, kind, path
    }
  }' "$1"
}

# Forbidden first components per library layer.
forbidden_for() {
  case "$1" in
    src/common/*) echo '^(cpu|cuda|api|oracle|runner|proxyattn/oracle)/' ;;
    src/cpu/*) echo '^(cuda|api|oracle|runner|proxyattn/oracle)/' ;;
    src/cuda/*) echo '^(cpu|api|oracle|runner|proxyattn/oracle)/' ;;
    src/api/*) echo '^(oracle|runner|proxyattn/oracle)/' ;;
    include/proxyattn/oracle/*) echo '^(common|cpu|cuda|api|oracle|runner|src|testing|tests)/' ;;
    include/proxyattn/*) echo '^(common|cpu|cuda|api|oracle|runner|src|testing|tests|proxyattn/oracle)/' ;;
    *) echo '' ;;
  esac
}

# Programs around the library: public headers, system headers, own directory only.
is_client() {
  case "$1" in
    tools/*|python/csrc/*|bench/*|examples/*|fuzz/*|src/runner/*) return 0 ;;
    *) return 1 ;;
  esac
}

while IFS= read -r file; do
  dir=$(dirname "$file")
  forbidden=$(forbidden_for "$file")
  while IFS=$'\t' read -r line kind path; do
    [[ -n "$line" ]] || continue
    if [[ -n "$forbidden" && "$path" =~ $forbidden ]]; then
      offence "$file" "$line" "$path" "crosses an arrow of the layout"
      continue
    fi
    if is_client "$file"; then
      [[ "$path" == proxyattn/* || "$path" =~ $generated ]] && continue
      # A fuzzer of the command line reaches the CLI's parser through the CLI's own headers.
      [[ "$file" == fuzz/* && "$path" =~ ^tools/proxyattn/[a-z_]+\.h$ ]] && continue
      if [[ "$kind" == '"' ]]; then
        # Own directory: relative to the file, or spelled from the repository root.
        if [[ "$path" != */* && -f "$dir/$path" ]] || [[ "$(dirname "$path")" == "$dir" ]]; then
          [[ "$path" == *.cc || "$path" == *.cu ]] &&
            offence "$file" "$line" "$path" "includes a source file; link the library instead"
          continue
        fi
        offence "$file" "$line" "$path" "expected <proxyattn/...>, a system header or a header of $dir/"
      elif [[ "$path" =~ $internal ]]; then
        offence "$file" "$line" "$path" "expected <proxyattn/...> (library internals)"
      fi
    fi
  done < <(includes_of "$file")
done < <(git ls-files --cached --others --exclude-standard -- '*.h' '*.hpp' '*.cc' '*.cpp' '*.cu' '*.cuh' ':!:build*')

if ((status == 0)); then
  echo "check-includes: every #include follows the layout's arrows"
fi
exit "$status"
