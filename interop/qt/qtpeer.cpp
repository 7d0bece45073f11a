// qtpeer: the Qt side of localsock's interoperability tests (localsock/tests/qt_interop.rs).
//
// One small program, many modes. Every mode talks through a real QLocalServer or QLocalSocket
// and reports what it saw as single lines on stdout, flushed at once, so that a test can wait
// for them:
//
//   LISTENING <fullServerName>           LISTEN-FAILED <QAbstractSocket::SocketError> <text>
//   CONNECTED <fullServerName>           CONNECT-FAILED <QLocalSocket::LocalSocketError> <text>
//   PROGRESS <bytes>                     (once, after the first MiB of a transfer)
//   SENT <bytes> <fnv1a64>               RECEIVED <bytes> <fnv1a64>
//   ECHO-OK <messages> <bytes each>      FRAMES <round trips>
//   DISCONNECTED <last LocalSocketError, -1 for none> <bytes read>
//   FAIL <what>                          (then a non-zero exit)
//
// Names in arguments and in output are percent-encoded UTF-8 (`%00` is a NUL), so abstract
// names with trailing NULs can travel through argv and back.
//
// Modes:
//   version                  QT <qVersion()> ABSTRACT <0|1>
//   listen-once              listen, report, exit (the destructor closes and unlinks)
//   server-echo              event loop, readyRead -> write back; exits after --clients
//                            disconnects (0: never)
//   server-recv              event loop; read --size bytes, report, disconnectFromServer
//   server-send              event loop; write --size pattern bytes with bytesWritten flow
//                            control, report, disconnectFromServer (graceful: flushes first)
//   server-frames            blocking; --count request/response frames, the shape of
//                            tst_qlocalsocket's simpleCommandProtocol1 (QDataStream, Qt_5_12)
//   client-echo              --style blocking (waitFor*) or event (signals); --count messages
//                            of --size bytes, each echoed back and compared
//   client-send              blocking; write --size pattern bytes, report, disconnect
//   client-recv              blocking; read --size bytes, report, wait for the disconnect
//   client-frames            blocking; --count frames against a server
//   client-wait              event loop; connect, then report bytes read and the disconnect
//
// Options: --name NAME --abstract --user-access --group-access --other-access --remove-first
//          --style blocking|event --size N --count N --seed N --clients N --timeout SECONDS
//
// Built by build.sh with g++ and pkg-config (Qt6Network, else Qt5Network); no moc needed.

#include <QCoreApplication>
#include <QDataStream>
#include <QLocalServer>
#include <QLocalSocket>
#include <QTimer>

#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace {

#if QT_VERSION >= QT_VERSION_CHECK(6, 2, 0) && defined(Q_OS_LINUX)
constexpr bool kHasAbstract = true;
#else
constexpr bool kHasAbstract = false;
#endif

constexpr qint64 kChunk = 64 * 1024;
constexpr qint64 kMaxQueued = 1024 * 1024;
constexpr qint64 kProgressAt = 1024 * 1024;
constexpr int kIoTimeoutMs = 20000;

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stdout, fmt, ap);
    va_end(ap);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

[[noreturn]] void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fputs("FAIL ", stdout);
    std::vfprintf(stdout, fmt, ap);
    va_end(ap);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::_Exit(7);
}

// Percent-encodes bytes that would not survive a line-based protocol.
QByteArray encode(const QString &s)
{
    const QByteArray raw = s.toUtf8();
    QByteArray out;
    for (char c : raw) {
        const auto b = static_cast<unsigned char>(c);
        if (b <= 0x20 || b >= 0x7f || b == '%') {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", b);
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

QString decode(const char *arg)
{
    const QByteArray raw = QByteArray::fromPercentEncoding(QByteArray(arg));
    // Explicit size: embedded and trailing NULs are part of the name.
    return QString::fromUtf8(raw.constData(), raw.size());
}

// The byte stream both sides generate: xorshift64, each state emitted as 8 little-endian bytes.
struct Pattern {
    quint64 state;
    quint64 word = 0;
    int left = 0;

    explicit Pattern(quint64 seed) : state(seed ? seed : 0x9E3779B97F4A7C15ull) {}

    quint64 next64()
    {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    }

    void fill(char *p, qint64 n)
    {
        for (qint64 i = 0; i < n; ++i) {
            if (left == 0) {
                word = next64();
                left = 8;
            }
            p[i] = static_cast<char>(word & 0xff);
            word >>= 8;
            --left;
        }
    }
};

// FNV-1a, 64 bits, over every byte.
struct Fnv {
    quint64 h = 0xcbf29ce484222325ull;

    void add(const char *p, qint64 n)
    {
        for (qint64 i = 0; i < n; ++i) {
            h ^= static_cast<unsigned char>(p[i]);
            h *= 0x100000001b3ull;
        }
    }
};

struct Args {
    QByteArray mode;
    QString name;
    bool abstract = false;
    bool userAccess = false;
    bool groupAccess = false;
    bool otherAccess = false;
    bool removeFirst = false;
    QByteArray style = "blocking";
    qint64 size = 1000;
    int count = 1;
    quint64 seed = 1;
    int clients = 1;
    int timeoutSecs = 60;
};

Args parse(int argc, char **argv)
{
    if (argc < 2)
        fail("usage: qtpeer MODE [--name NAME] [options]");
    Args a;
    a.mode = argv[1];
    for (int i = 2; i < argc; ++i) {
        const QByteArray opt = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc)
                fail("option %s needs a value", argv[i]);
            return argv[++i];
        };
        if (opt == "--name")
            a.name = decode(value());
        else if (opt == "--abstract")
            a.abstract = true;
        else if (opt == "--user-access")
            a.userAccess = true;
        else if (opt == "--group-access")
            a.groupAccess = true;
        else if (opt == "--other-access")
            a.otherAccess = true;
        else if (opt == "--remove-first")
            a.removeFirst = true;
        else if (opt == "--style")
            a.style = value();
        else if (opt == "--size")
            a.size = std::strtoll(value(), nullptr, 10);
        else if (opt == "--count")
            a.count = std::atoi(value());
        else if (opt == "--seed")
            a.seed = std::strtoull(value(), nullptr, 10);
        else if (opt == "--clients")
            a.clients = std::atoi(value());
        else if (opt == "--timeout")
            a.timeoutSecs = std::atoi(value());
        else
            fail("unknown option %s", argv[i]);
    }
    if (a.abstract && !kHasAbstract)
        fail("--abstract needs Qt >= 6.2 on Linux; this qtpeer was built with Qt %s", QT_VERSION_STR);
    return a;
}

// ---------------------------------------------------------------------------------------------
// Servers

bool startServer(QLocalServer &server, const Args &a)
{
    QLocalServer::SocketOptions opts = QLocalServer::NoOptions;
    if (a.userAccess)
        opts |= QLocalServer::UserAccessOption;
    if (a.groupAccess)
        opts |= QLocalServer::GroupAccessOption;
    if (a.otherAccess)
        opts |= QLocalServer::OtherAccessOption;
#if QT_VERSION >= QT_VERSION_CHECK(6, 2, 0)
    if (a.abstract)
        opts |= QLocalServer::AbstractNamespaceOption;
#endif
    server.setSocketOptions(opts);
    if (a.removeFirst)
        QLocalServer::removeServer(a.name);
    if (!server.listen(a.name)) {
        say("LISTEN-FAILED %d %s", int(server.serverError()), qPrintable(server.errorString()));
        return false;
    }
    say("LISTENING %s", encode(server.fullServerName()).constData());
    return true;
}

// Reports the last error and the disconnect of an accepted or connecting socket.
struct Watch {
    int lastError = -1;
    qint64 bytesRead = 0;

    void attach(QLocalSocket *s)
    {
        QObject::connect(s, &QLocalSocket::errorOccurred,
                         [this](QLocalSocket::LocalSocketError e) { lastError = int(e); });
    }
    void reportDisconnect() const { say("DISCONNECTED %d %lld", lastError, bytesRead); }
};

int serverEcho(const Args &a)
{
    QLocalServer server;
    if (!startServer(server, a))
        return 3;
    int done = 0;
    QObject::connect(&server, &QLocalServer::newConnection, [&] {
        while (QLocalSocket *s = server.nextPendingConnection()) {
            say("CONNECTED %s", encode(s->fullServerName()).constData());
            auto *watch = new Watch;
            watch->attach(s);
            QObject::connect(s, &QLocalSocket::readyRead, [s, watch] {
                const QByteArray data = s->readAll();
                watch->bytesRead += data.size();
                s->write(data);
            });
            QObject::connect(s, &QLocalSocket::disconnected, [&, s, watch] {
                watch->reportDisconnect();
                delete watch;
                s->deleteLater();
                if (++done == a.clients)
                    QCoreApplication::quit();
            });
        }
    });
    return QCoreApplication::exec();
}

int serverRecv(const Args &a)
{
    QLocalServer server;
    if (!startServer(server, a))
        return 3;
    QObject::connect(&server, &QLocalServer::newConnection, [&] {
        QLocalSocket *s = server.nextPendingConnection();
        if (!s)
            return;
        server.close(); // one client; also shows the file is unlinked on close
        say("CONNECTED %s", encode(s->fullServerName()).constData());
        auto *watch = new Watch;
        auto *fnv = new Fnv;
        watch->attach(s);
        QObject::connect(s, &QLocalSocket::readyRead, [&a, s, watch, fnv] {
            const QByteArray data = s->readAll();
            const qint64 before = watch->bytesRead;
            fnv->add(data.constData(), data.size());
            watch->bytesRead += data.size();
            if (before < kProgressAt && watch->bytesRead >= kProgressAt)
                say("PROGRESS %lld", watch->bytesRead);
            if (before < a.size && watch->bytesRead >= a.size) {
                say("RECEIVED %lld %016llx", watch->bytesRead, fnv->h);
                s->disconnectFromServer();
            }
        });
        QObject::connect(s, &QLocalSocket::disconnected, [watch] {
            watch->reportDisconnect();
            QCoreApplication::quit();
        });
    });
    return QCoreApplication::exec();
}

int serverSend(const Args &a)
{
    QLocalServer server;
    if (!startServer(server, a))
        return 3;
    Pattern pattern(a.seed);
    Fnv fnv;
    qint64 sent = 0;
    bool reported = false;
    QObject::connect(&server, &QLocalServer::newConnection, [&] {
        QLocalSocket *s = server.nextPendingConnection();
        if (!s)
            return;
        server.close();
        say("CONNECTED %s", encode(s->fullServerName()).constData());
        auto *watch = new Watch;
        watch->attach(s);
        auto pump = [&, s] {
            while (sent < a.size && s->bytesToWrite() < kMaxQueued
                   && s->state() == QLocalSocket::ConnectedState) {
                const qint64 n = qMin(kChunk, a.size - sent);
                QByteArray chunk(n, Qt::Uninitialized);
                pattern.fill(chunk.data(), n);
                fnv.add(chunk.constData(), n);
                if (s->write(chunk) != n)
                    fail("write: %s", qPrintable(s->errorString()));
                const qint64 before = sent;
                sent += n;
                if (before < kProgressAt && sent >= kProgressAt)
                    say("PROGRESS %lld", sent);
            }
            if (sent == a.size && !reported) {
                reported = true;
                say("SENT %lld %016llx", sent, fnv.h);
                s->disconnectFromServer();
            }
        };
        QObject::connect(s, &QLocalSocket::bytesWritten, pump);
        QObject::connect(s, &QLocalSocket::disconnected, [watch] {
            watch->reportDisconnect();
            QCoreApplication::quit();
        });
        pump();
    });
    return QCoreApplication::exec();
}

// Reads one QDataStream value with a transaction, waiting for more data as needed: exactly
// how tst_qlocalsocket's simpleCommandProtocol1 reads.
template <typename Read>
void readFrame(QLocalSocket *s, QDataStream &in, int index, Read read)
{
    for (;;) {
        in.startTransaction();
        read();
        if (in.commitTransaction())
            return;
        if (!s->waitForReadyRead(kIoTimeoutMs))
            fail("frame %d: waitForReadyRead: %d %s", index, int(s->error()), qPrintable(s->errorString()));
    }
}

void writeAll(QLocalSocket *s, const QByteArray &data, const char *what)
{
    if (s->write(data) != data.size())
        fail("%s: write: %s", what, qPrintable(s->errorString()));
    while (s->bytesToWrite() > 0) {
        if (!s->waitForBytesWritten(kIoTimeoutMs))
            fail("%s: waitForBytesWritten: %d %s", what, int(s->error()), qPrintable(s->errorString()));
    }
}

int serverFrames(const Args &a)
{
    QLocalServer server;
    if (!startServer(server, a))
        return 3;
    if (!server.waitForNewConnection(a.timeoutSecs * 1000))
        fail("no client connected");
    QLocalSocket *s = server.nextPendingConnection();
    say("CONNECTED %s", encode(s->fullServerName()).constData());
    QDataStream in(s);
    in.setVersion(QDataStream::Qt_5_12);
    for (int i = 0; i < a.count; ++i) {
        QByteArray command;
        qint64 responseSize = 0;
        readFrame(s, in, i, [&] { in >> command >> responseSize; });
        if (command.isEmpty() || command.count('a') != command.size())
            fail("frame %d: request of %lld bytes is not all 'a'", i, qint64(command.size()));
        if (responseSize < 0 || responseSize > 16 * 1024 * 1024)
            fail("frame %d: response size %lld out of range", i, responseSize);
        QByteArray reply;
        {
            QDataStream out(&reply, QIODevice::WriteOnly);
            out.setVersion(QDataStream::Qt_5_12);
            out << QByteArray(responseSize, 'b');
        }
        writeAll(s, reply, "frame reply");
    }
    say("FRAMES %d", a.count);
    if (s->state() != QLocalSocket::UnconnectedState && !s->waitForDisconnected(kIoTimeoutMs))
        fail("the client did not disconnect");
    say("DISCONNECTED %d 0", int(s->error()));
    return 0;
}

int listenOnce(const Args &a)
{
    QLocalServer server;
    return startServer(server, a) ? 0 : 3;
}

// ---------------------------------------------------------------------------------------------
// Clients

void prepare(QLocalSocket &s, const Args &a)
{
#if QT_VERSION >= QT_VERSION_CHECK(6, 2, 0)
    if (a.abstract)
        s.setSocketOptions(QLocalSocket::AbstractNamespaceOption);
#else
    Q_UNUSED(s);
    Q_UNUSED(a);
#endif
}

// The blocking style: connectToServer + waitForConnected.
bool connectBlocking(QLocalSocket &s, const Args &a)
{
    prepare(s, a);
    s.connectToServer(a.name);
    if (s.state() != QLocalSocket::ConnectedState && !s.waitForConnected(kIoTimeoutMs)) {
        say("CONNECT-FAILED %d %s", int(s.error()), qPrintable(s.errorString()));
        return false;
    }
    say("CONNECTED %s", encode(s.fullServerName()).constData());
    return true;
}

void hangUpBlocking(QLocalSocket &s)
{
    const qint64 pending = s.bytesAvailable();
    s.disconnectFromServer();
    if (s.state() != QLocalSocket::UnconnectedState && !s.waitForDisconnected(kIoTimeoutMs))
        fail("waitForDisconnected: %s", qPrintable(s.errorString()));
    say("DISCONNECTED %d %lld", int(s.error()), pending);
}

int clientEchoBlocking(const Args &a)
{
    QLocalSocket s;
    if (!connectBlocking(s, a))
        return 4;
    Pattern pattern(a.seed);
    for (int i = 0; i < a.count; ++i) {
        QByteArray message(a.size, Qt::Uninitialized);
        pattern.fill(message.data(), a.size);
        writeAll(&s, message, "echo request");
        QByteArray got;
        while (got.size() < message.size()) {
            if (s.bytesAvailable() == 0 && !s.waitForReadyRead(kIoTimeoutMs))
                fail("echo %d: waitForReadyRead: %d %s", i, int(s.error()), qPrintable(s.errorString()));
            got += s.read(message.size() - got.size());
        }
        if (got != message)
            fail("echo %d: the reply differs from the request", i);
    }
    say("ECHO-OK %d %lld", a.count, a.size);
    hangUpBlocking(s);
    return 0;
}

int clientEchoEvent(const Args &a)
{
    QLocalSocket s;
    Watch watch;
    watch.attach(&s);
    Pattern pattern(a.seed);
    QByteArray expected, got;
    int done = 0;
    bool wasConnected = false;
    auto sendNext = [&] {
        expected = QByteArray(a.size, Qt::Uninitialized);
        pattern.fill(expected.data(), a.size);
        got.clear();
        s.write(expected);
    };
    QObject::connect(&s, &QLocalSocket::connected, [&] {
        wasConnected = true;
        say("CONNECTED %s", encode(s.fullServerName()).constData());
        sendNext();
    });
    QObject::connect(&s, &QLocalSocket::readyRead, [&] {
        const QByteArray data = s.readAll();
        watch.bytesRead += data.size();
        got += data;
        if (got.size() < expected.size())
            return;
        if (got != expected)
            fail("echo %d: the reply differs from the request", done);
        if (++done < a.count) {
            sendNext();
            return;
        }
        say("ECHO-OK %d %lld", a.count, a.size);
        s.disconnectFromServer();
    });
    QObject::connect(&s, &QLocalSocket::disconnected, [&] {
        watch.reportDisconnect();
        QCoreApplication::exit(done == a.count ? 0 : 5);
    });
    QObject::connect(&s, &QLocalSocket::errorOccurred, [&](QLocalSocket::LocalSocketError e) {
        if (!wasConnected) {
            say("CONNECT-FAILED %d %s", int(e), qPrintable(s.errorString()));
            QCoreApplication::exit(4);
        }
    });
    // Connect from inside the event loop: connected() and errorOccurred() are emitted
    // synchronously inside connectToServer() on Unix.
    QTimer::singleShot(0, [&] {
        prepare(s, a);
        s.connectToServer(a.name);
    });
    return QCoreApplication::exec();
}

int clientSend(const Args &a)
{
    QLocalSocket s;
    if (!connectBlocking(s, a))
        return 4;
    Pattern pattern(a.seed);
    Fnv fnv;
    qint64 sent = 0;
    while (sent < a.size) {
        const qint64 n = qMin(kChunk, a.size - sent);
        QByteArray chunk(n, Qt::Uninitialized);
        pattern.fill(chunk.data(), n);
        fnv.add(chunk.constData(), n);
        if (s.write(chunk) != n)
            fail("write: %s", qPrintable(s.errorString()));
        const qint64 before = sent;
        sent += n;
        if (before < kProgressAt && sent >= kProgressAt)
            say("PROGRESS %lld", sent);
        while (s.bytesToWrite() > kMaxQueued) {
            if (!s.waitForBytesWritten(kIoTimeoutMs))
                fail("waitForBytesWritten: %d %s", int(s.error()), qPrintable(s.errorString()));
        }
    }
    while (s.bytesToWrite() > 0) {
        if (!s.waitForBytesWritten(kIoTimeoutMs))
            fail("waitForBytesWritten: %d %s", int(s.error()), qPrintable(s.errorString()));
    }
    say("SENT %lld %016llx", sent, fnv.h);
    hangUpBlocking(s);
    return 0;
}

int clientRecv(const Args &a)
{
    QLocalSocket s;
    if (!connectBlocking(s, a))
        return 4;
    Fnv fnv;
    qint64 total = 0;
    while (total < a.size) {
        if (s.bytesAvailable() == 0 && !s.waitForReadyRead(kIoTimeoutMs) && s.bytesAvailable() == 0)
            fail("after %lld bytes: waitForReadyRead: %d %s", total, int(s.error()), qPrintable(s.errorString()));
        const QByteArray data = s.read(a.size - total);
        fnv.add(data.constData(), data.size());
        const qint64 before = total;
        total += data.size();
        if (before < kProgressAt && total >= kProgressAt)
            say("PROGRESS %lld", total);
    }
    say("RECEIVED %lld %016llx", total, fnv.h);
    // The server hangs up after sending: wait for Qt to see it.
    if (s.state() != QLocalSocket::UnconnectedState && !s.waitForDisconnected(kIoTimeoutMs))
        fail("the server did not disconnect");
    say("DISCONNECTED %d %lld", int(s.error()), s.bytesAvailable());
    return 0;
}

int clientFrames(const Args &a)
{
    QLocalSocket s;
    if (!connectBlocking(s, a))
        return 4;
    Pattern rng(a.seed);
    QDataStream in(&s);
    in.setVersion(QDataStream::Qt_5_12);
    for (int i = 0; i < a.count; ++i) {
        const qint64 requestSize = 1 + qint64(rng.next64() % 1024);
        const qint64 responseSize = 1 + qint64(rng.next64() % 1024);
        QByteArray request;
        {
            QDataStream out(&request, QIODevice::WriteOnly);
            out.setVersion(QDataStream::Qt_5_12);
            out << QByteArray(requestSize, 'a');
            out << responseSize;
        }
        writeAll(&s, request, "frame request");
        QByteArray reply;
        readFrame(&s, in, i, [&] { in >> reply; });
        if (reply.size() != responseSize || reply.count('b') != reply.size())
            fail("frame %d: expected %lld bytes of 'b', got %lld bytes", i, responseSize, qint64(reply.size()));
    }
    say("FRAMES %d", a.count);
    hangUpBlocking(s);
    return 0;
}

int clientWait(const Args &a)
{
    QLocalSocket s;
    Watch watch;
    watch.attach(&s);
    bool wasConnected = false;
    QObject::connect(&s, &QLocalSocket::connected, [&] {
        wasConnected = true;
        say("CONNECTED %s", encode(s.fullServerName()).constData());
    });
    QObject::connect(&s, &QLocalSocket::readyRead, [&] { watch.bytesRead += s.readAll().size(); });
    QObject::connect(&s, &QLocalSocket::disconnected, [&] {
        watch.bytesRead += s.readAll().size();
        watch.reportDisconnect();
        QCoreApplication::exit(0);
    });
    QObject::connect(&s, &QLocalSocket::errorOccurred, [&](QLocalSocket::LocalSocketError e) {
        if (!wasConnected) {
            say("CONNECT-FAILED %d %s", int(e), qPrintable(s.errorString()));
            QCoreApplication::exit(4);
        }
    });
    QTimer::singleShot(0, [&] {
        prepare(s, a);
        s.connectToServer(a.name);
    });
    return QCoreApplication::exec();
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    const Args a = parse(argc, argv);
    // A hung peer must never outlive its test: SIGALRM's default action ends the process.
    alarm(static_cast<unsigned>(a.timeoutSecs));

    if (a.mode == "version") {
        say("QT %s ABSTRACT %d", qVersion(), kHasAbstract ? 1 : 0);
        return 0;
    }
    if (a.name.isEmpty())
        fail("mode %s needs --name", a.mode.constData());
    if (a.mode == "listen-once")
        return listenOnce(a);
    if (a.mode == "server-echo")
        return serverEcho(a);
    if (a.mode == "server-recv")
        return serverRecv(a);
    if (a.mode == "server-send")
        return serverSend(a);
    if (a.mode == "server-frames")
        return serverFrames(a);
    if (a.mode == "client-echo") {
        if (a.style == "blocking")
            return clientEchoBlocking(a);
        if (a.style == "event")
            return clientEchoEvent(a);
        fail("unknown --style %s", a.style.constData());
    }
    if (a.mode == "client-send")
        return clientSend(a);
    if (a.mode == "client-recv")
        return clientRecv(a);
    if (a.mode == "client-frames")
        return clientFrames(a);
    if (a.mode == "client-wait")
        return clientWait(a);
    fail("unknown mode %s", a.mode.constData());
}
