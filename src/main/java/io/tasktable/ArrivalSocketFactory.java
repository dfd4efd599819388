package io.tasktable;

import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

import javax.net.SocketFactory;

/**
 * Internal (public only so that pgjdbc can instantiate it by name): sockets that run a callback as soon as bytes
 * arrive, for the LISTEN connection. pgjdbc's {@code getNotifications} hands over a notification only after
 * probing the socket for more with a 1 ms read timeout ({@code PGStream.hasMessagePending}), so a worker woken
 * by its return started claiming about 1.2 ms after the enqueue committed (200 notifications, p50: the socket
 * read came 0.08 ms before the enqueuer saw its commit, {@code getNotifications} returned 1.24 ms after the
 * read). Bytes on a LISTEN connection are notifications (or a server error, after which it reconnects), so
 * their arrival is the signal.
 */
public final class ArrivalSocketFactory extends SocketFactory {

    private static final Map<String, Runnable> CALLBACKS = new ConcurrentHashMap<>();

    private final Runnable onArrival;

    /** @param key from {@link #register}; pgjdbc passes its {@code socketFactoryArg} */
    public ArrivalSocketFactory(String key) {
        this.onArrival = CALLBACKS.getOrDefault(key, () -> { });
    }

    /** Connection properties whose sockets run {@code onArrival} on every read that returns data. */
    static Properties properties(String key) {
        Properties properties = new Properties();
        properties.setProperty("socketFactory", ArrivalSocketFactory.class.getName());
        properties.setProperty("socketFactoryArg", key);
        return properties;
    }

    /** Registers a callback; pass the key to {@link #properties}, and to {@link #unregister} when done. */
    static String register(Runnable onArrival) {
        String key = UUID.randomUUID().toString();
        CALLBACKS.put(key, onArrival);
        return key;
    }

    static void unregister(String key) {
        CALLBACKS.remove(key);
    }

    @Override
    public Socket createSocket() {
        return new ArrivalSocket(onArrival);
    }

    @Override
    public Socket createSocket(String host, int port) throws IOException {
        return connected(new InetSocketAddress(host, port));
    }

    @Override
    public Socket createSocket(String host, int port, InetAddress localHost, int localPort) throws IOException {
        return connected(new InetSocketAddress(host, port), new InetSocketAddress(localHost, localPort));
    }

    @Override
    public Socket createSocket(InetAddress host, int port) throws IOException {
        return connected(new InetSocketAddress(host, port));
    }

    @Override
    public Socket createSocket(InetAddress address, int port, InetAddress localAddress, int localPort) throws IOException {
        return connected(new InetSocketAddress(address, port), new InetSocketAddress(localAddress, localPort));
    }

    private Socket connected(InetSocketAddress remote, InetSocketAddress... local) throws IOException {
        Socket socket = createSocket();
        try {
            for (InetSocketAddress address : local) {
                socket.bind(address);
            }
            socket.connect(remote);
            return socket;
        } catch (IOException e) {
            socket.close();
            throw e;
        }
    }

    private static final class ArrivalSocket extends Socket {

        private final Runnable onArrival;
        private InputStream in;

        ArrivalSocket(Runnable onArrival) {
            this.onArrival = onArrival;
        }

        @Override
        public synchronized InputStream getInputStream() throws IOException {
            if (in == null) {
                in = new FilterInputStream(super.getInputStream()) {
                    @Override
                    public int read() throws IOException {
                        int b = super.read();
                        if (b >= 0) {
                            onArrival.run();
                        }
                        return b;
                    }

                    @Override
                    public int read(byte[] buffer, int offset, int length) throws IOException {
                        int n = super.read(buffer, offset, length);
                        if (n > 0) {
                            onArrival.run();
                        }
                        return n;
                    }
                };
            }
            return in;
        }
    }
}
