# Shared set-up for scripts/demo and scripts/test: find a Python >= 3.11 and build the project's
# virtual environment (.venv-<version>) with the package installed in editable mode.
# Usage (sourced): PY_VERSION=3.13 EXTRAS=test . scripts/_env.sh   -> sets $VENV_PY

find_python() {
    local want="${1:-}" cand
    local names=()
    if [ -n "$want" ]; then names=("python$want"); else names=(python3 python3.13 python3.12 python3.11); fi
    for cand in "${names[@]}"; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
        # pyenv keeps non-global versions out of the shims' reach: look in its versions folder
        local root="${PYENV_ROOT:-$HOME/.pyenv}"
        for p in "$root"/versions/"${cand#python}"*/bin/"$cand" /root/.pyenv/versions/"${cand#python}"*/bin/"$cand"; do
            if [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                echo "$p"; return 0
            fi
        done
    done
    echo "blockpaca_nb needs Python >= 3.11${want:+ (asked for $want)}; none found" >&2
    return 1
}

BASE_PY="$(find_python "${PY_VERSION:-}")" || exit 1
PYV="$("$BASE_PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
VENV="${VENV:-.venv-$PYV}"
# One stamp per pyproject version; it lists the extras installed ("base", "test"), so scripts/demo
# and scripts/test share one environment and never undo each other's set-up.
STAMP="$VENV/.installed-$(cksum < pyproject.toml | cut -d' ' -f1)"
WANT="${EXTRAS:-base}"
if ! grep -qx "$WANT" "$STAMP" 2>/dev/null; then
    echo "==> setting up $VENV with $BASE_PY (Python $PYV)" >&2
    [ -x "$VENV/bin/python" ] || "$BASE_PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}" >&2
    find "$VENV" -maxdepth 1 -name '.installed-*' ! -path "$STAMP" -delete
    { echo base; echo "$WANT"; } >> "$STAMP"
fi
VENV_PY="$VENV/bin/python"
export PATH="$PWD/$VENV/bin:$PATH"
