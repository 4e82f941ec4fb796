# Sourced by ./peft4j and ./run-tests: finds a JDK 25+ and exports JAVA_HOME, or explains what to install.
# The JDK's `release` file names its version without starting a JVM (a JVM start is ~0.1-0.4 s of every command's
# time to first token); a JDK without one is asked.
java_major() {
  local rel v line
  rel="${1%/bin/java}/release"   # (shell builtins only: each sed, head or dirname was a process of every command's start)
  if [ -f "$rel" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        JAVA_VERSION=\"[0-9]*) v="${line#JAVA_VERSION=\"}"; v="${v%%[!0-9]*}"; echo "$v"; return 0;;
      esac
    done < "$rel"
  fi
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -1
}

find_java() {
  local c
  for c in "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25* /usr/lib/jvm/java-25* /usr/lib/jvm/jdk-25* \
           /opt/java/openjdk /Library/Java/JavaVirtualMachines/*/Contents/Home "$HOME"/.sdkman/candidates/java/current; do
    [ -n "$c" ] && [ -x "$c/bin/java" ] && [ -x "$c/bin/javac" ] || continue
    local v; v="$(java_major "$c/bin/java")"
    if [ -n "$v" ] && [ "$v" -ge 25 ]; then echo "$c"; return 0; fi
  done
  if command -v javac >/dev/null 2>&1; then
    c="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
    local v; v="$(java_major "$c/bin/java")"
    if [ -n "$v" ] && [ "$v" -ge 25 ]; then echo "$c"; return 0; fi
  fi
  return 1
}

if ! JH="$(find_java)"; then
  cat >&2 <<'MSG'
peft4j needs a Java 25 JDK (for the Vector API and FFM) and none was found.
Looked at $JAVA_HOME, /usr/lib/jvm/*25*, /opt/java/openjdk and the javac on PATH.
Install one, e.g. Eclipse Temurin 25:
  Debian/Ubuntu: https://adoptium.net/installation/linux/  (apt install temurin-25-jdk)
  or SDKMAN:     sdk install java 25-tem
then run again, or point JAVA_HOME at it.
MSG
  exit 1
fi
export JAVA_HOME="$JH"
