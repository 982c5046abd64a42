#!/bin/sh
# Add GDL Studio to this user's application menu (or remove it with --remove).  Run it from the
# unpacked app folder: the menu entry points at the gdl-studio executable beside this script.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
ENTRY="$DATA/applications/gdl-studio.desktop"
ICON="$DATA/icons/hicolor/256x256/apps/gdl-studio.png"
if [ "${1:-}" = "--remove" ]; then
  rm -f "$ENTRY" "$ICON"
  echo "removed $ENTRY"
  exit 0
fi
mkdir -p "$(dirname "$ENTRY")" "$(dirname "$ICON")"
cp "$HERE/gdl-studio.png" "$ICON"
# The entry ships with a bare `gdl-studio`; the menu needs the absolute path of this folder.
sed -e "s|^Exec=.*|Exec=\"$HERE/gdl-studio\"|" -e "s|^TryExec=.*|TryExec=$HERE/gdl-studio|" \
  "$HERE/gdl-studio.desktop" > "$ENTRY"
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database "$(dirname "$ENTRY")" || true
fi
echo "installed $ENTRY"
