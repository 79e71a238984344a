"""A minimal QMP (QEMU Machine Protocol) client over a unix socket."""

import json
import socket


class QMPError(Exception):
    """QEMU answered a command with an error, or the socket failed."""


def execute(socket_path, command, arguments=None, timeout=10):
    """Run one QMP command on a fresh connection and return its result.

    Asynchronous events arriving in between are skipped.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            stream = sock.makefile('rwb')
            _reply(stream)  # greeting
            _send(stream, 'qmp_capabilities')
            _reply(stream)
            _send(stream, command, arguments)
            return _reply(stream)
    except OSError as exc:
        raise QMPError('QMP %s on %s failed: %s'
                       % (command, socket_path, exc)) from exc


def _send(stream, command, arguments=None):
    message = {'execute': command}
    if arguments:
        message['arguments'] = arguments
    stream.write(json.dumps(message).encode() + b'\n')
    stream.flush()


def _reply(stream):
    while True:
        line = stream.readline()
        if not line:
            raise QMPError('QEMU closed the QMP connection')
        message = json.loads(line)
        if 'event' in message:
            continue
        if 'error' in message:
            raise QMPError(message['error'].get('desc', str(message)))
        if 'QMP' in message:
            return message['QMP']
        return message.get('return')
