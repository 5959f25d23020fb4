"""A broker listener with SASL (SCRAM-SHA-512) over TLS, for tests: a CA and a broker
certificate made with the JDK's ``keytool`` (no other tool needed), and the properties
``kafka.sh`` appends to the broker's configuration (``KAFKA_EXTRA_CONFIG``)."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureListener:
    """What a client needs: the listener's address, the CA to trust, a user and password;
    and what the broker needs (:meth:`broker_env`)."""

    port: int
    cafile: Path
    username: str
    password: str
    config: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def broker_env(self) -> tuple[tuple[str, str], ...]:
        """``kafka.sh`` settings: the extra listener, and the SCRAM user at format time."""
        user = f"{MECHANISM}=[name={self.username},password={self.password}]"
        return (("KAFKA_EXTRA_CONFIG", str(self.config)), ("KAFKA_SCRAM_USERS", user))


def secure_listener(directory: Path, broker_port: int, port: int) -> SecureListener:
    """Certificates and broker properties in ``directory`` for a SASL_SSL listener on
    ``port`` beside the broker's plaintext one on ``broker_port`` (controller on the next)."""
    directory.mkdir(parents=True, exist_ok=True)
    store_password = secrets.token_hex(12)
    cafile = _certificates(directory, store_password)
    config = directory / "sasl_ssl.properties"
    controller = broker_port + 1
    config.write_text(
        "\n".join(
            [
                f"listeners=PLAINTEXT://127.0.0.1:{broker_port},"
                f"CONTROLLER://127.0.0.1:{controller},SASL_SSL://127.0.0.1:{port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port},"
                f"SASL_SSL://127.0.0.1:{port}",
                "listener.security.protocol.map="
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.location={directory / 'broker.p12'}",
                f"ssl.keystore.password={store_password}",
                f"ssl.key.password={store_password}",
                "",
            ]
        )
    )
    return SecureListener(port, cafile, "segstream", secrets.token_hex(16), config)


def _certificates(directory: Path, password: str) -> Path:
    """A CA, and a broker key pair in ``broker.p12`` whose certificate the CA signed for
    127.0.0.1; returns the CA's PEM file."""
    ca, broker = directory / "ca.p12", directory / "broker.p12"
    for old in (ca, broker):
        old.unlink(missing_ok=True)
    store = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password]
    pair = ["-genkeypair", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2"]
    _keytool(*pair, "-alias", "ca", "-dname", "CN=segstream test CA", "-ext", "bc:c",
             "-keystore", str(ca), *store)  # fmt: skip
    _keytool("-exportcert", "-alias", "ca", "-keystore", str(ca), "-storepass", password,
             "-rfc", "-file", str(directory / "ca.pem"))  # fmt: skip
    _keytool(*pair, "-alias", "broker", "-dname", "CN=127.0.0.1", "-keystore", str(broker),
             *store)  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-keystore", str(broker), "-storepass", password,
             "-file", str(directory / "broker.csr"))  # fmt: skip
    _keytool("-gencert", "-alias", "ca", "-keystore", str(ca), "-storepass", password,
             "-infile", str(directory / "broker.csr"), "-outfile", str(directory / "broker.pem"),
             "-rfc", "-ext", "SAN=IP:127.0.0.1", "-validity", "2")  # fmt: skip
    for alias, pem in (("ca", "ca.pem"), ("broker", "broker.pem")):
        _keytool("-importcert", "-noprompt", "-alias", alias, "-keystore", str(broker),
                 "-storepass", password, "-file", str(directory / pem))  # fmt: skip
    return directory / "ca.pem"


def _keytool(*args: str) -> None:
    result = subprocess.run(["keytool", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"keytool {args[0]} failed: {result.stdout}{result.stderr}")
